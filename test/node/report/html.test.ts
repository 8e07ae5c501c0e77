import { describe, expect, it } from 'vitest'
import sharp from 'sharp'
import { escapeHtml, pngSize, renderReportHtml } from '../../../node/report/html.ts'
import type { DemoReportModel } from '../../../node/report/model.ts'

const digest = (c: string): string => `sha256:${c.repeat(64)}`

async function model(): Promise<DemoReportModel> {
  const png = new Uint8Array(
    await sharp({ create: { width: 64, height: 32, channels: 3, background: '#f0c000' } })
      .png()
      .toBuffer(),
  )
  return {
    title: 'diffusion-coop demo',
    generatedAt: '2026-11-23T21:00:00.000Z',
    wallSeconds: 754,
    backend: 'wasm',
    charter: {
      coopId: digest('c'),
      config: 'emoji32',
      publishers: ['12D3KooWPublisher'],
      threshold: 1,
      admission: 'open',
      acceptedLicenses: ['CC-BY-4.0'],
      innerSteps: 40,
      outerLr: 0.7,
      outerMomentum: 0.9,
      aggregator: 'mean',
      compression: 'int8',
      quorum: 4,
      phases: 'autoencoder: 2 cooperative rounds; U-Net: 6 rounds',
      createdAt: '2026-11-23T20:47:00.000Z',
    },
    charterJson: { note: '<script>alert(1)</script>' },
    peers: [
      {
        name: 'peer-1',
        peerId: '12D3KooWPublisher',
        publisher: true,
        rightsHolder: 'did:key:z6MkAlice',
        categories: ['Smileys & Emotion'],
        items: 120,
        manifestId: 'urn:uuid:1',
      },
      {
        name: 'peer-2',
        peerId: '12D3KooWTrainer',
        publisher: false,
        rightsHolder: 'did:key:z6MkBob',
        categories: ['Flags'],
        items: 118,
        manifestId: 'urn:uuid:2',
      },
    ],
    checkpoints: [
      {
        round: 1,
        phase: 'unet',
        digest: digest('1'),
        parent: null,
        contributions: [{ peerId: '12D3KooWTrainer', digest: digest('d'), samples: 320, loss: 0.5 }],
        excludedItems: 0,
        verification: { ok: true, detail: 'signature, digests and recomputation checked' },
        evalLoss: 0.41,
        path: 'checkpoints/1',
      },
      {
        round: 2,
        phase: 'unet',
        digest: digest('2'),
        parent: digest('1'),
        contributions: [],
        excludedItems: 3,
        verification: { ok: false, code: 'DIGEST_MISMATCH', detail: 'model.safetensors does not match' },
        path: 'checkpoints/2',
      },
    ],
    attribution: [
      {
        rightsHolder: 'did:key:z6MkAlice',
        license: 'CC-BY-4.0',
        attribution: 'Twemoji graphics by Twitter, Inc and other contributors',
        uri: 'https://github.com/twitter/twemoji',
        items: 120,
        peers: ['peer-1'],
      },
    ],
    samples: [{ round: 1, png, rows: ['Smileys & Emotion'] }],
    lossSvg:
      '<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><title>loss</title></svg>',
  }
}

describe('demo report HTML', () => {
  it('is self-contained: no external scripts, styles or images', async () => {
    const html = renderReportHtml(await model())
    expect(html).not.toMatch(/<script/i)
    expect(html).not.toMatch(/<link\b/i)
    expect(html).not.toMatch(/src="(?!data:)/)
    expect(html).toContain('src="data:image/png;base64,')
  })

  it('embeds the sample grid bytes as they are', async () => {
    const m = await model()
    const html = renderReportHtml(m)
    const b64 = /src="data:image\/png;base64,([^"]+)"/.exec(html)?.[1]
    expect(Buffer.from(b64 ?? '', 'base64').equals(Buffer.from(m.samples[0]!.png))).toBe(true)
  })

  it('inlines the loss plot without its XML prolog', async () => {
    const html = renderReportHtml(await model())
    expect(html).toContain(
      '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><title>loss</title></svg>',
    )
    expect(html).not.toContain('<?xml')
  })

  it('credits each rights holder with the licence and its link, as CC-BY requires', async () => {
    const html = renderReportHtml(await model())
    const attribution = html.slice(html.indexOf('id="attribution"'))
    expect(attribution).toContain('Twemoji graphics by Twitter, Inc and other contributors')
    expect(attribution).toContain('<a href="https://creativecommons.org/licenses/by/4.0/">CC-BY-4.0</a>')
    expect(attribution).toContain('did:key:z6MkAlice')
    expect(attribution).toContain('Changes were made')
  })

  it('shows each checkpoint with parent, contributions and verification status', async () => {
    const html = renderReportHtml(await model())
    expect(html).toContain('1 of 2 checkpoints verified')
    expect(html).toContain('✘ DIGEST_MISMATCH')
    expect(html).toContain('peer-2: 320 samples, loss 0.5000')
    expect(html).toContain('genesis')
    expect(html).toContain(`title="${digest('1')}"`)
  })

  it('says when the time box ended the run early, and only then', async () => {
    const m = await model()
    expect(renderReportHtml(m)).not.toContain('time box')
    const html = renderReportHtml({
      ...m,
      timeBox: { unetRoundsDone: 32, unetRoundsPlanned: 43, limitSeconds: 900 },
    })
    expect(html).toContain(
      "the time box ended the run after U-Net round 32 of the charter's 43, to finish within 15 minutes",
    )
  })

  it('escapes text from charters and manifests', async () => {
    const html = renderReportHtml(await model())
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;')
    expect(escapeHtml(`"a" & 'b' <c>`)).toBe('&quot;a&quot; &amp; &#39;b&#39; &lt;c&gt;')
  })

  it('reads PNG dimensions and rejects what is not a PNG', async () => {
    expect(pngSize((await model()).samples[0]!.png)).toEqual({ width: 64, height: 32 })
    expect(pngSize(new Uint8Array(30))).toBeUndefined()
  })
})
