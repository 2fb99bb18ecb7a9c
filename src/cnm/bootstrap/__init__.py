"""Bootstrap: the status record, its state machine, and the create / join / recover actions."""
