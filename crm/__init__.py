"""telehub CRM for dealers (after-sales). The API arrives in a later release; the package holds its place."""
