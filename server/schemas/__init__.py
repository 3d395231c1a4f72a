"""Wire types (pydantic), in OpenAI's field order."""
