from tripbook.core.errors import Conflict, Unauthenticated


class EmailAlreadyRegistered(Conflict):
    code = "EMAIL_ALREADY_REGISTERED"
    title = "Email already registered"


class InvalidCredentials(Unauthenticated):
    code = "INVALID_CREDENTIALS"
    title = "Incorrect email or password"
