"""The CDP segment service: segment definitions, real-time memberships, suppression lists."""
