"""Local development: the stack, the emulators, recorded responses, samples and the demo."""
