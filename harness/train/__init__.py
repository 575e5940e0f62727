"""Training: the U-Net, the timed loop (wait for data vs compute), torchrun helpers."""
