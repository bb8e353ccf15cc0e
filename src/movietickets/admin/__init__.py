"""Reports for operators: sales, the ticket listing and payment anomalies."""
