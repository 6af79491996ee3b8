"""Attacks: fairness poisoning (Attack4Good) and backdoors (BadNets-style triggers), one
package per attack."""
