"""Training every model the hub ships (`python -m core train KIND`)."""
