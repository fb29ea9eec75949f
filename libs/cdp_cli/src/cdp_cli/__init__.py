"""The cdp command-line tool."""
