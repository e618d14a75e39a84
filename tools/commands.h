/* The memkit CLI's commands (commands.c). Each returns an exit code. */
#ifndef MEMKIT_TOOLS_COMMANDS_H
#define MEMKIT_TOOLS_COMMANDS_H

#include "cli.h"

int cmd_ls(const cli_opts *o);
int cmd_stat(const cli_opts *o);
int cmd_validate(const cli_opts *o);
int cmd_dump(const cli_opts *o);
int cmd_objects(const cli_opts *o);
int cmd_reclaim(const cli_opts *o);
int cmd_rm(const cli_opts *o);

#endif
