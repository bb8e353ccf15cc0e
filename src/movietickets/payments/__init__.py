"""Payments: seat holds, STK pushes, Daraja's callbacks, settlement and reconciliation."""
