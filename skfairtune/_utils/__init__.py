"""Small shared utilities: parameter validation and input checks."""
