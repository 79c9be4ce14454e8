"""Command-line tools shipped with torch_sunrise."""
