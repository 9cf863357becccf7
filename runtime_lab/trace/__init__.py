"""Every step of making a container, as data and for people: the catalogue of steps (steps),
the events and their sinks (events), the narration of --trace, --step and --explain
(narrate)."""
