"""The training data: the Noto Color Emoji data set with its names, labels and held-out split
(`emoji`), and the inpainting masks of training and of the command line (`masks`)."""
