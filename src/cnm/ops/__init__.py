"""What an operator runs the agent with: Prometheus metrics (`metrics`, `collector`, `http`),
the store watch that feeds them and logs store events (`store_watch`), and the effective
configuration report of `cnm node run --check-config` (`config_report`)."""
