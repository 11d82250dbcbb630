"""Command-line front ends: each parses arguments and calls library functions, nothing more."""
