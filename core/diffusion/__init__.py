"""The mathematics of diffusion, independent of any trained model: noise schedules and the eps / x0 / v
conversions (`schedules`, `parameterization`), seeded noise (`rng`), the samplers over any denoiser
(`samplers`), guidance and thresholding as denoiser wrappers (`guidance`) and likelihood in bits per
dimension (`likelihood`)."""
