// The one typed shape of a model + training configuration. Strict objects everywhere:
// an unknown key is an error, never silently ignored (nanoGPT's configurator rule).
import { z } from 'zod'

const positiveInt = (max: number) => z.number().int().min(1).max(max)
const learningRate = z.number().positive().max(1)
const decay = z.number().min(0).max(1)

const channelList = (maxLevels: number) => z.array(positiveInt(4096)).min(1).max(maxLevels)

export const AutoencoderConfigSchema = z.strictObject({
  /** Channels per resolution level; each level after the first halves the resolution. */
  channels: channelList(6),
  latentChannels: positiveInt(64),
  /** Weight of the KL term relative to the per-element reconstruction MSE. */
  klWeight: z.number().min(0).max(1),
  groups: positiveInt(256),
  lr: learningRate,
  batchSize: positiveInt(4096),
  steps: z.number().int().min(0).max(100_000_000),
  emaDecay: decay,
})

export const UnetConfigSchema = z.strictObject({
  /** Channels per resolution level of the latent U-Net; each level after the first halves the resolution. */
  channels: channelList(5),
  resBlocksPerLevel: positiveInt(8),
  /** Self-attention at the lowest resolution. */
  attention: z.boolean(),
  attentionHeads: positiveInt(64),
  groups: positiveInt(256),
  timeEmbedDim: positiveInt(4096),
  /** Probability of replacing the class by the null class during training (classifier-free guidance). */
  classDropProb: z.number().min(0).max(1),
  lr: learningRate,
  batchSize: positiveInt(4096),
  steps: z.number().int().min(0).max(100_000_000),
  emaDecay: decay,
})

export const DiffusionConfigSchema = z.strictObject({
  timesteps: z.number().int().min(2).max(100_000),
  schedule: z.enum(['linear', 'scaled_linear', 'cosine']),
  betaStart: z.number().positive().max(1),
  betaEnd: z.number().positive().max(1),
  /** What the network predicts: the noise (epsilon, DDPM) or v = sqrt(abar) eps - sqrt(1-abar) x0 (Salimans & Ho). */
  prediction: z.enum(['epsilon', 'v']),
  /** Per-timestep loss weighting in training: 'uniform' (DDPM's simple loss) or Min-SNR-gamma. */
  // Defaults keep configurations written before these fields existed meaning what they meant (uniform).
  lossWeighting: z.enum(['uniform', 'min_snr']).default('uniform'),
  /** gamma of Min-SNR weighting (5 in the paper). */
  minSnrGamma: z.number().positive().max(1000).default(5),
  samplingSteps: positiveInt(100_000),
  guidance: z.number().min(0).max(100),
})

export const TrainingConfigSchema = z.strictObject({
  /** Images in the fixed held-out batch used by evalLoss. */
  evalBatch: positiveInt(4096),
  /** Steps between periodic checkpoints in `coop train`. */
  checkpointEvery: positiveInt(100_000_000),
  /** Steps between metrics lines in `coop train`. */
  logEvery: positiveInt(100_000_000),
})

export const CoopConfigSchema = z
  .strictObject({
    name: z.string().min(1).max(64),
    image: z.strictObject({ size: z.number().int().min(4).max(1024), channels: z.literal(3) }),
    /** Class names the model is conditioned on, in label order; empty = unconditional. */
    classes: z.array(z.string().min(1).max(128)).max(10_000),
    autoencoder: AutoencoderConfigSchema,
    unet: UnetConfigSchema,
    diffusion: DiffusionConfigSchema,
    training: TrainingConfigSchema,
  })
  .superRefine((config, ctx) => {
    const aeFactor = 2 ** (config.autoencoder.channels.length - 1)
    if (config.image.size % aeFactor !== 0)
      ctx.addIssue({
        code: 'custom',
        path: ['image', 'size'],
        message: `must be divisible by ${aeFactor} (autoencoder downsampling)`,
      })
    const latentSize = config.image.size / aeFactor
    const unetFactor = 2 ** (config.unet.channels.length - 1)
    if (Number.isInteger(latentSize) && latentSize % unetFactor !== 0)
      ctx.addIssue({
        code: 'custom',
        path: ['unet', 'channels'],
        message: `latent size ${latentSize} must be divisible by ${unetFactor} (U-Net downsampling)`,
      })
    for (const [part, section] of [
      ['autoencoder', config.autoencoder],
      ['unet', config.unet],
    ] as const) {
      section.channels.forEach((c, i) => {
        if (c % section.groups !== 0)
          ctx.addIssue({
            code: 'custom',
            path: [part, 'channels', i],
            message: `${c} channels is not divisible by ${part}.groups=${section.groups}`,
          })
      })
    }
    const lowest = config.unet.channels[config.unet.channels.length - 1] as number
    if (config.unet.attention && lowest % config.unet.attentionHeads !== 0)
      ctx.addIssue({
        code: 'custom',
        path: ['unet', 'attentionHeads'],
        message: `must divide the lowest-level channels (${lowest})`,
      })
    if (config.unet.timeEmbedDim % 2 !== 0)
      ctx.addIssue({
        code: 'custom',
        path: ['unet', 'timeEmbedDim'],
        message: 'must be even (sin and cos halves)',
      })
    if (config.diffusion.schedule !== 'cosine' && config.diffusion.betaEnd < config.diffusion.betaStart)
      ctx.addIssue({ code: 'custom', path: ['diffusion', 'betaEnd'], message: 'must be >= betaStart' })
    if (config.diffusion.samplingSteps > config.diffusion.timesteps)
      ctx.addIssue({
        code: 'custom',
        path: ['diffusion', 'samplingSteps'],
        message: 'must be <= diffusion.timesteps',
      })
    if (new Set(config.classes).size !== config.classes.length)
      ctx.addIssue({ code: 'custom', path: ['classes'], message: 'class names must be unique' })
  })

export type CoopConfig = z.infer<typeof CoopConfigSchema>
export type AutoencoderConfig = CoopConfig['autoencoder']
export type UnetConfig = CoopConfig['unet']
export type DiffusionConfig = CoopConfig['diffusion']
