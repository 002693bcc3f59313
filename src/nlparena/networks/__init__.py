"""Pure torch.nn architectures: no Lightning, no logging, no optimizers."""
