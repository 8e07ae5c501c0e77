// Child process for the store crash test: writes records and blobs as fast as it can and
// prints one "ack" line per write only after the store acknowledged it. The parent SIGKILLs it.
import { randomBytes } from 'node:crypto'
import { openStore } from '../../../node/store/store.ts'

const [dir, prefix] = process.argv.slice(2) as [string, string]
const store = await openStore(dir)
for (let i = 0; ; i++) {
  const key = `${prefix}-${i.toString().padStart(6, '0')}`
  if (i % 5 === 0) {
    const digest = await store.putBlob(new Uint8Array(randomBytes(64 * 1024 + i)))
    await store.batch([
      { type: 'put', table: 'contributions', key, value: { i, payload: digest } },
      { type: 'put', table: 'rounds', key, value: { i, state: 'contributed' } },
    ])
    process.stdout.write(`ack ${key} ${digest}\n`)
  } else {
    await store.contributions.put(key, { i })
    process.stdout.write(`ack ${key}\n`)
  }
}
