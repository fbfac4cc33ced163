"""`vspd demo`: the whole pipeline on one machine, on an embedded broker by default."""
