"""Structured extraction: the reply is validated into a pydantic model (``response.parsed``).

On backends with native JSON-schema support the schema is sent as ``response_format``; on the
others (like the small embedded model) the schema goes into the prompt, the JSON is extracted
from the reply, and an invalid reply is re-asked with the validation errors.
"""

from _common import client_for, parse_args
from pydantic import BaseModel

from llmkit import OutputValidationError


class Person(BaseModel):
    name: str
    age: int


args = parse_args(__doc__ or "")
text = "Alice is 30 years old."
with client_for(args.profile) as client:
    try:
        response = client.chat(
            f"Extract the person from this text: {text}",
            response_model=Person,
            max_tokens=40,
        )
    except OutputValidationError as error:
        print(f"the model did not produce valid output after {error.attempts} tries:")
        print(error.raw_text)
        raise SystemExit(1) from None
    person = response.parsed
    assert isinstance(person, Person)
    print(repr(person))
