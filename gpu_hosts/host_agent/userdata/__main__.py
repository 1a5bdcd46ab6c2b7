from host_agent.userdata.render import main

raise SystemExit(main())
