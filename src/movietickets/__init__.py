"""movietickets: cinema and event ticket sales paid with M-Pesa STK Push."""

__version__ = "0.1.0"
