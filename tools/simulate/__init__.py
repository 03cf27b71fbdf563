"""A fleet of virtual vehicles streaming to a cloud gateway (``telehub simulate``).

:mod:`tools.simulate.fleet` decodes a real recording once into the agent's own
batches and gives every virtual vehicle its own copy of them: started at its
own point of the recording, moved to the present and, on request, with its own
small variation of the values. :mod:`tools.simulate.client` streams those
batches to a gateway over the real wire contract, one gRPC stream per vehicle,
paced to a chosen rate, and measures how long each acknowledgement takes.
``telehub bench ingest`` builds its load on the same two modules.
"""
