"""Pure domain: jobs and their state machine, events, errors, batches, schemas. No I/O, no google.*."""
