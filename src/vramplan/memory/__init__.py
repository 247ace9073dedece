"""One module per memory term; each returns named components with bytes."""
