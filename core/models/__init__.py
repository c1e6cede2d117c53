"""The networks and how they are stored: the UNet (`unet`, or diffusers') inside a `DiffusionModel`
(`networks`), the project's CLIP (`clip_text`, `clip_model`) and the text encoders over it or T5
(`text_encoders`), the semantic prior (`prior`), the noise-aware classifier (`noisy_classifier`), the
EMA of training (`ema`), checkpoint folders (`checkpoints`, `names`) and the set of models the app and
the command line load once (`modelset`)."""
