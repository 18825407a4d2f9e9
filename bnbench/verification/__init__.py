"""``bnbench verify``: every framework x mode x device x dtype against the reference, as one table
and one JSON file the results tables read (``verify``), and the same run inside each asv
environment (``asvenvs``)."""
