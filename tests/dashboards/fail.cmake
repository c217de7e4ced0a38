# Used as `cmake -DMESSAGE=... -P fail.cmake`: a test that fails with MESSAGE, for a check whose
# tool is missing (the dashboard checks fail, they never skip).
message(FATAL_ERROR "${MESSAGE}")
