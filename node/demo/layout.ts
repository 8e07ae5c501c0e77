// Where everything lives inside --out. One place, so setup, the peers, the collector and the
// tests agree on paths.
import { join } from 'node:path'

export interface PeerLayout {
  index: number
  name: string
  publisher: boolean
  dir: string
  /** The peer's consented images, one folder per category. */
  dataDir: string
  /** The node's libp2p identity (its PeerId is the custodian in the consent manifest). */
  nodeKey: string
  /** The rights holder's signing key (issuer of the consent manifest). */
  rightsKey: string
  consent: string
  store: string
  log: string
}

export interface DemoLayout {
  out: string
  /** Twemoji laid out by category, before the split. */
  twemojiDir: string
  charter: string
  peers: PeerLayout[]
  checkpointsDir: string
  samplesDir: string
  lossSvg: string
  /** Sample quality per round (class accuracy and Fréchet distance), beside the loss in the report. */
  qualitySvg: string
  metrics: string
  report: string
}

export function demoLayout(out: string, peers: number, publisherIndex: number): DemoLayout {
  return {
    out,
    twemojiDir: join(out, 'setup', 'twemoji'),
    charter: join(out, 'setup', 'charter.json'),
    peers: Array.from({ length: peers }, (_, index) => {
      const name = `peer-${index + 1}`
      const dir = join(out, 'peers', name)
      return {
        index,
        name,
        publisher: index === publisherIndex,
        dir,
        dataDir: join(dir, 'data'),
        nodeKey: join(dir, 'node.key'),
        rightsKey: join(dir, 'rights-holder.key'),
        consent: join(dir, 'consent.json'),
        store: join(dir, 'store'),
        log: join(dir, 'node.log'),
      }
    }),
    checkpointsDir: join(out, 'checkpoints'),
    samplesDir: join(out, 'samples'),
    lossSvg: join(out, 'loss.svg'),
    qualitySvg: join(out, 'quality.svg'),
    metrics: join(out, 'metrics.json'),
    report: join(out, 'report.html'),
  }
}
