"""Safaricom Daraja (M-Pesa Express / STK Push): the async client and a local simulator."""
