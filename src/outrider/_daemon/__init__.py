"""The daemon: configuration, tokens, and `outrider serve`."""
