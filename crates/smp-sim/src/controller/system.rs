//! grbl's `$` system commands: help, settings, parameters, parser state, build info, check
//! mode, unlock, reset of the settings.

use super::settings::Settings;
use super::{codes, gcode, MachineState, SimController, GRBL_BUILD};

impl SimController {
    /// grbl's `system_execute_line`. Returns the status and whether a reset must follow the
    /// response (`$C` leaving check mode, `$RST=`).
    pub(super) fn system_command(&mut self, line: &[u8]) -> (Result<(), u8>, bool) {
        let idle_or_alarm = matches!(self.state, MachineState::Idle | MachineState::Alarm);
        match line.get(1).copied() {
            None => {
                self.emit("[HLP:$$ $# $G $I $N $x=val $Nx=line $J=line $SLP $C $X $H ~ ! ? ctrl-x]");
                (Ok(()), false)
            }
            Some(b'J') => {
                if self.state != MachineState::Idle {
                    return (Err(codes::ERROR_IDLE_ERROR), false);
                }
                if line.get(2) != Some(&b'=') {
                    return (Err(codes::ERROR_INVALID_STATEMENT), false);
                }
                (Err(codes::ERROR_UNSUPPORTED_COMMAND), false) // jogging is not simulated
            }
            Some(c @ (b'$' | b'G' | b'C' | b'X')) => {
                if line.len() != 2 {
                    return (Err(codes::ERROR_INVALID_STATEMENT), false);
                }
                match c {
                    b'$' => {
                        if matches!(self.state, MachineState::Run | MachineState::Hold { .. }) {
                            return (Err(codes::ERROR_IDLE_ERROR), false);
                        }
                        for l in self.settings.report_lines() {
                            self.emit(&l);
                        }
                        (Ok(()), false)
                    }
                    b'G' => {
                        let modes = self.gc.modes_report();
                        self.emit(&modes);
                        (Ok(()), false)
                    }
                    b'C' => {
                        if self.state == MachineState::Check {
                            self.emit("[MSG:Disabled]");
                            (Ok(()), true)
                        } else if self.state != MachineState::Idle {
                            (Err(codes::ERROR_IDLE_ERROR), false)
                        } else {
                            self.state = MachineState::Check;
                            self.emit("[MSG:Enabled]");
                            (Ok(()), false)
                        }
                    }
                    _ => {
                        if self.state == MachineState::Alarm {
                            self.emit("[MSG:Caution: Unlocked]");
                            self.state = MachineState::Idle;
                        }
                        (Ok(()), false)
                    }
                }
            }
            Some(c) => {
                if !idle_or_alarm {
                    return (Err(codes::ERROR_IDLE_ERROR), false);
                }
                match c {
                    b'#' => {
                        if line.len() != 2 {
                            return (Err(codes::ERROR_INVALID_STATEMENT), false);
                        }
                        for wcs in 54..=59 {
                            self.emit(&format!("[G{wcs}:0.000,0.000,0.000]"));
                        }
                        self.emit("[G28:0.000,0.000,0.000]");
                        self.emit("[G30:0.000,0.000,0.000]");
                        self.emit("[G92:0.000,0.000,0.000]");
                        self.emit("[TLO:0.000]");
                        self.emit("[PRB:0.000,0.000,0.000:0]");
                        (Ok(()), false)
                    }
                    b'H' => (Err(codes::ERROR_SETTING_DISABLED), false), // homing disabled ($22=0)
                    b'S' => {
                        if line == b"$SLP" {
                            (Err(codes::ERROR_UNSUPPORTED_COMMAND), false) // sleep is not simulated
                        } else {
                            (Err(codes::ERROR_INVALID_STATEMENT), false)
                        }
                    }
                    b'I' => {
                        if line.len() == 2 {
                            let ver = format!("[VER:{GRBL_BUILD}:{}]", self.build_info);
                            let opt = format!("[OPT:V,{},{}]", self.cfg.planner_blocks, self.cfg.rx_buffer_bytes);
                            self.emit(&ver);
                            self.emit(&opt);
                            let n = self.axis_words.count;
                            if n != 3 {
                                // A controller for more than X Y Z is a grblHAL build, which
                                // names its axes (grbl 1.1 itself drives three and says nothing).
                                let letters: String =
                                    super::axes::AXIS_LETTERS[..n].iter().map(|&b| char::from(b)).collect();
                                self.emit(&format!("[AXS:{n}:{letters}]"));
                            }
                            (Ok(()), false)
                        } else if line[2] != b'=' {
                            (Err(codes::ERROR_INVALID_STATEMENT), false)
                        } else {
                            self.build_info = String::from_utf8_lossy(&line[3..]).into_owned();
                            (Ok(()), false)
                        }
                    }
                    b'R' => {
                        if line.len() != 6 || &line[2..5] != b"ST=" {
                            return (Err(codes::ERROR_INVALID_STATEMENT), false);
                        }
                        match line[5] {
                            b'$' | b'*' => {
                                self.settings = Settings::from_config(&self.cfg);
                                self.limits = self.settings.axis_limits();
                            }
                            b'#' => {} // offsets are always zero
                            _ => return (Err(codes::ERROR_INVALID_STATEMENT), false),
                        }
                        self.emit("[MSG:Restoring defaults]");
                        (Ok(()), true)
                    }
                    b'N' => {
                        if line.len() == 2 {
                            self.emit("$N0=");
                            self.emit("$N1=");
                            (Ok(()), false)
                        } else if self.state != MachineState::Idle {
                            (Err(codes::ERROR_IDLE_ERROR), false)
                        } else {
                            (Err(codes::ERROR_UNSUPPORTED_COMMAND), false) // startup blocks are not simulated
                        }
                    }
                    _ => (self.store_setting(line), false),
                }
            }
        }
    }

    /// `$n=value`, parsed as grbl does.
    fn store_setting(&mut self, line: &[u8]) -> Result<(), u8> {
        let mut i = 1;
        let n = gcode::read_float(line, &mut i).ok_or(codes::ERROR_BAD_NUMBER_FORMAT)?;
        if line.get(i) != Some(&b'=') {
            return Err(codes::ERROR_INVALID_STATEMENT);
        }
        i += 1;
        let value = gcode::read_float(line, &mut i).ok_or(codes::ERROR_BAD_NUMBER_FORMAT)?;
        if i != line.len() || n > 255.0 {
            return Err(codes::ERROR_INVALID_STATEMENT);
        }
        self.settings.store(n, value)?;
        self.limits = self.settings.axis_limits();
        Ok(())
    }
}
