"""How work is run on this machine: `capacity` (line workers per run and runs at once, held to the
cores, memory and LLM quota), `scheduling` (independent units `max_parallel` at a time) and
`progress` (what a long command shows while it runs)."""
