"""Applications on the library: the photo tagger and the `hiprompt` command."""
