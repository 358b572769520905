"""P2's peer: the smallest HTTP function, served by functions-framework exactly as the real ones are."""

import functions_framework


@functions_framework.http
def hello(request: object) -> str:
    return "hello"
