"""Training: the run (`genlab train`), its Trainer and callbacks, and the loggers."""
