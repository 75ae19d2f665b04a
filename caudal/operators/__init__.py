"""Operators: the units of work inside a subtask's chain. Each is a small class behind the
Operator interface; the runtime knows them only through operators.registry."""
