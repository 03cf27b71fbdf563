"""telehub CRM for dealers: records, grants and consent, service leads from rule events,
appointments, repair orders, recalls, webhooks to dealer systems, and an audit of every read.

The composition root is ``crm.api.app.create_app``; the entry point for rule
events is ``crm.leads.on_event``.
"""
