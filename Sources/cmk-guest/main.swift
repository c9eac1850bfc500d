// cmk-guest: the agent inside each child. All behaviour lives in GuestAgent (docs/guest-agent.md).
import GuestAgent
import Glibc

exit(AgentRunner.run(Array(CommandLine.arguments.dropFirst())))
