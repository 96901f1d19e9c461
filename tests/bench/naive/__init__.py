"""The naive baseline: the textbook ORM seat hold, only ever run by the bench."""
