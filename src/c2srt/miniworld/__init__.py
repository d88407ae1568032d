"""The mini-world: a synthetic benchmark that runs anywhere, and `c2srt demo` on it."""
