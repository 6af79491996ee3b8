"""Attacks (S4 fairness poisoning, S7 backdoors), one module per attack."""
