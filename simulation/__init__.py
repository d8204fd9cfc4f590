"""A shop to run the product against: the order-bus simulator, the order generator and its
shop profiles, injected faults, simulated shoppers, the volume scaler and the UCI Online
Retail loader. Tools for the demo, the tests and the benchmarks; nothing in the nightly
path or the service imports them (an import contract in `make lint`)."""
