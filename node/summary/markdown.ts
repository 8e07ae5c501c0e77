// The training-content summary as Markdown, section by section as the EU AI Office template.
import type { TrainingSummary } from './summary.ts'

/**
 * Text a signer chose (a rights holder's name, the charter's names and classes, an auditor's
 * feature name): every character Markdown or HTML would act on is backslash-escaped, so it cannot
 * become a link, an image, markup or a new table column or row.
 */
export const markdownCell = (text: string | number): string =>
  String(text)
    .replace(/[\\`*_{}[\]()<>#+!|~&]/g, '\\$&')
    .replace(/[\r\n]+/g, ' ')

export function summaryMarkdown(s: TrainingSummary): string {
  const g = s.general
  const lines = [
    `# Public summary of training content`,
    '',
    `Structure: ${s.template}.`,
    '',
    `> ${s.applicability}`,
    '',
    '## 1. General information',
    '',
    '### 1.1 Provider',
    '',
    `- Cooperative: ${markdownCell(g.provider.coopName ?? 'unnamed')} (coop id \`${g.provider.coop}\`)`,
    `- Publishers (signing checkpoints): ${g.provider.publishers.map((p) => `\`${p}\``).join(', ')}`,
    '',
    '### 1.2 Model',
    '',
    `- Model: ${markdownCell(g.model.name)}, ${g.model.phase} checkpoint of round ${g.model.round}, id \`${g.model.checkpoint}\``,
    `- License: ${markdownCell(g.model.license)}`,
    ...Object.entries(g.model.files).map(([name, digest]) => `- File \`${name}\`: \`${digest}\``),
    ...(g.dependencies.length === 0
      ? ['- Dependencies: none']
      : g.dependencies.map(
          (d) =>
            `- Dependency: ${d.role} \`${d.checkpoint}\` (provenance \`${d.provenance}\`), ${d.trainedInThisCoop ? 'trained in this cooperative: its data is included below' : 'a component from another cooperative: see its own summary'}`,
        )),
    '',
    '### 1.3 Modalities and training data size',
    '',
    `- Input: ${g.modalities.input.join(', ')}; output: ${g.modalities.output.join(', ')}`,
    `- Training data: ${g.dataSize.items} images${g.dataSize.imageSize === null ? '' : ` at ${g.dataSize.imageSize}x${g.dataSize.imageSize} pixels`}, ${g.dataSize.sampleSteps} sample-steps in the lineage (size band: under 1 million images)`,
    ...(g.dataSize.classes.length === 0
      ? []
      : [`- Classes: ${g.dataSize.classes.map(markdownCell).join(', ')}`]),
    '',
    '## 2. List of data sources',
    '',
    `- 2.1 Publicly available datasets: ${s.dataSources.publicDatasets}`,
    '- 2.2 Private data licensed from rights holders (signed consent manifests):',
    '',
    '| Rights holder | did:key | License | Items | Manifests | Share of sample-steps |',
    '|---|---|---|---|---|---|',
    ...s.dataSources.licensedPrivateData.map(
      (h) =>
        `| ${markdownCell(h.name)} | \`${h.did}\` | ${markdownCell(h.license)} | ${h.items} | ${h.manifests} | ${(h.share * 100).toFixed(2)} % |`,
    ),
    '',
    `- 2.3 Data crawled or scraped from online sources: ${s.dataSources.crawledData}`,
    `- 2.4 User data: ${s.dataSources.userData}`,
    `- 2.5 Synthetic data: ${s.dataSources.syntheticData}`,
    `- 2.6 Other sources: ${s.dataSources.otherSources}`,
    '',
    '## 3. Relevant data processing aspects',
    '',
    '### 3.1 Reservations of rights and opt-outs',
    '',
    s.processing.optOuts,
    '',
    `Revocations: ${s.processing.revocations.notices} notice(s) applied in the lineage, ${s.processing.revocations.itemsExcluded} item(s) excluded. Policy: ${s.processing.revocations.rule}.`,
    '',
    `Unlearning receipts: ${s.processing.unlearningReceipts}.`,
    '',
    '### 3.2 Memorization audits',
    '',
    ...(s.processing.memorizationAudits.length === 0
      ? ['No signed memorization audit is attached to this checkpoint (`coop audit memorization --key`).']
      : s.processing.memorizationAudits.map(
          (a) =>
            `- Audit \`${a.statement}\` by \`${a.auditor}\`: ${a.flagged} of ${a.images} images flagged as near-copies (l2 < ${a.thresholds.l2}, ratio < ${a.thresholds.ratio.toFixed(3)}, features ${markdownCell(a.features)})`,
        )),
    '',
    '### 3.3 Illegal content',
    '',
    s.processing.illegalContent,
    '',
  ]
  return lines.join('\n')
}
