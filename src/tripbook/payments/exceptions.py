from tripbook.core.errors import Conflict


class HoldExpired(Conflict):
    code = "HOLD_EXPIRED"
    title = "The hold has expired; reserve the seats again"
