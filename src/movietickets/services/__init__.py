"""Services: the business rules. They never see a Request and never build SQL."""
