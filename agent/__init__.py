"""The T3-Agent: a vision-language controller that solves tasks by writing Python that calls tools."""
