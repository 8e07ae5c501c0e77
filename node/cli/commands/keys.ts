// `coop keys new --out <file>` and `coop keys show <file>`: create or inspect an Ed25519 key
// file. The same key is a rights holder's did:key and a node's libp2p PeerId.
import { didKeyFromPublicKey, generateKey, peerIdString } from '../../../protocol/keys.ts'
import { readKeyFile, writeKeyFile } from '../../keystore.ts'
import { parseCommandArgs, singlePositional } from '../args.ts'
import { type Command, UsageError } from '../command.ts'

const usage = `Usage:
  coop keys new --out <file>     create a new Ed25519 key file (mode 0600); prints its did:key and PeerId
  coop keys show <file>          print the did:key and PeerId of an existing key file

The file holds a libp2p protobuf Ed25519 private key: use it as a node's --key (its peer
identity) and as a rights holder's signing key for \`coop consent\`.`

function printIdentity(key: ReturnType<typeof generateKey>): void {
  process.stdout.write(
    `did:key  ${didKeyFromPublicKey(key.publicKey)}\npeerId   ${peerIdString(key.publicKey)}\n`,
  )
}

export const command: Command = {
  summary: 'create or inspect an Ed25519 key file (did:key + PeerId)',
  usage,
  async run(argv) {
    const [sub, ...rest] = argv
    if (sub === 'new') {
      const { values } = parseCommandArgs(rest, { out: { type: 'string' } })
      if (values.out === undefined) throw new UsageError('--out <file> is required')
      const key = generateKey()
      await writeKeyFile(values.out, key)
      printIdentity(key)
      process.stderr.write(
        `wrote ${values.out} (mode 0600). Keep it secret: it signs consent and is the node identity.\n`,
      )
      return 0
    }
    if (sub === 'show') {
      const { positionals } = parseCommandArgs(rest, {}, { allowPositionals: true })
      printIdentity(await readKeyFile(singlePositional(positionals, 'key file')))
      return 0
    }
    throw new UsageError(sub === undefined ? 'missing subcommand' : `unknown subcommand '${sub}'`)
  },
}
