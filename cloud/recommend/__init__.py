"""Recommendations for the driver: places and content ranked for a vehicle's context.

Pure core (no web, storage or transport library): ``catalog`` (model and
validation), ``hours`` (opening hours), ``spatial`` (grid index), ``context``
(position privacy, range, pseudonyms) and ``ranking`` (filters, score,
reasons). Adapters: ``importers`` (GeoJSON/CSV), ``vehicle_state`` (the tenant
store, read-only), ``app`` (FastAPI). ``service`` wires them per tenant, from
``config``. Stateless: nothing about a vehicle or its driver is kept.
"""
