"""The Flask adapter: ``BedrockAgentCoreApp``, ``AgentCore``'s blueprint, responses."""
