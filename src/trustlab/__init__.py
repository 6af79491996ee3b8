"""trustlab."""
